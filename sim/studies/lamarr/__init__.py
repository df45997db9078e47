"""Lamarr, LHCb's fast simulation: its validation against the detailed simulation (``study: lamarr``)
and its pipeline of networks on the suite's hardware targets (``study: lamarr_hw``)."""
