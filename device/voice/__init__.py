"""The voice loop: audio in, wake word, speech to text, sessions from the bus, spoken samples,
and the OVOS plugins of ours."""
