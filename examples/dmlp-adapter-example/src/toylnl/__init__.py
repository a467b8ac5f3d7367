"""toylnl: a tiny learning-with-noisy-labels codebase, standing in for an upstream.

It knows nothing about dmlp-plugin. Like many real ones (CDR, ELR) it splits the
training set with the global NumPy seed, keeps the training labels in an attribute
(``train_noisy_labels``, a list) and reads label files in its own format (one integer
per line).
"""

__version__ = "0.1.0"
