; Markdown (block grammar): every heading opens a section; chunk.py derives the
; heading path ("Install > From source") from the levels.
(atx_heading heading_content: (_)? @name) @definition.section
(setext_heading heading_content: (_) @name) @definition.section
