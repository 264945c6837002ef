"""installer: offline install/update archives and configuration templates."""
