"""receiver: the uPMU push protocol and the service that queues pushed files."""
