"""Vision experiments: datasets held on the device, backbones with a harmonic (or CE) head, one training cell,
the MNIST weight study, and the config grid. See docs/vision.md."""
