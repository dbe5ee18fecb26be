; reStructuredText: a section node is a title with its adornment(s); levels follow the
; order in which adornment styles first appear (docutils rule).
(section (title) @name) @definition.section
