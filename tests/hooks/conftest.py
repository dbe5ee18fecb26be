from ..gitutil import gitrepo  # noqa: F401 - the fixture: smallrepo as a git repository
