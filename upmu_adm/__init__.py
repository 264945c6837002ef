"""upmu-adm: the operator's shell for the uPMU list (see issue: upmu-adm)."""
