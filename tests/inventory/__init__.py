"""Unit tests of the EC2 inventory (inventories/), one file per module."""
