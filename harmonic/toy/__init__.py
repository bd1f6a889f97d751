"""The algorithmic (toy) experiments of Baek et al.: five small tasks, an MLP and a toy transformer."""
