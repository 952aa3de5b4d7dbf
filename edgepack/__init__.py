"""edgepack: an embedded deployment compiler for Cortex-M boards with Ethos-U NPUs."""

__version__ = "0.1.0"
