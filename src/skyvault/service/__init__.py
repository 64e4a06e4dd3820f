"""The web edge: TAP, UWS, VOSI handlers over the core."""
