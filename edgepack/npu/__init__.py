"""Functional Ethos-U model of Vela's command stream."""
