"""vdr-ops: process settings, logging and the `vdr` command line that ties the packages together."""
