"""The OVOS services of one device: config rendering, supervision, restarts, volume, playback."""
