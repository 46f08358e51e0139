"""The LXD lab that proves the air-gapped install, and its simulated upstream."""
