"""sync2q: moves queued .dat files into BTrDB."""
