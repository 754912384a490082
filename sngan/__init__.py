"""sngan: Spectrally Normalized GANs (Miyato et al., ICLR 2018)."""

__version__ = "0.1.0"
