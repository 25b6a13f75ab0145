"""Improved Techniques for Training GANs (Salimans et al., NIPS 2016): semi-supervised MNIST."""
