"""The DMLP paper's figures that ``dmlp reproduce`` prints beside its own.

Copied from the paper (Tu et al., CVPR 2023; ``shared/paper/tables.md``), so reports work
without the shared folder; ``tests/test_reproduce.py`` checks them against that file.
All are test accuracy (%) of a ResNet trained on SimCLR ResNet-50 features' purified
labels (DMLP-Naive: cross-entropy on the purified labels), CIFAR-10, symmetric noise in
the DivideMix convention. Keys are noise rates.
"""

from __future__ import annotations

__all__ = ["TABLE1_C10", "TABLE1_DIVIDEMIX_C10", "TABLE4_C10", "TABLE5_C10", "TABLE7_CLOTHING1M", "TABLE8_C10",
           "PAPER_TRUSTED_CIFAR"]

#: Table 1, CIFAR-10 columns: method -> {"best"|"last": {rate: accuracy}}.
TABLE1_C10: dict[str, dict[str, dict[float, float]]] = {
    "Cross-Entropy": {
        "best": {0.2: 86.8, 0.5: 79.4, 0.8: 62.9, 0.9: 42.7},
        "last": {0.2: 82.7, 0.5: 57.9, 0.8: 26.1, 0.9: 16.8},
    },
    "DMLP-Naive": {
        "best": {0.2: 94.7, 0.5: 94.2, 0.8: 93.5, 0.9: 92.8},
        "last": {0.2: 94.2, 0.5: 94.0, 0.8: 93.2, 0.9: 92.0},
    },
}

#: Table 5 (ablation of DMLP-Naive), CIFAR-10 columns: (ipc, eac) -> {"best"|"last": {rate: acc}}.
TABLE5_C10: dict[tuple[bool, bool], dict[str, dict[float, float]]] = {
    (False, True): {
        "best": {0.2: 93.7, 0.5: 93.3, 0.8: 91.1, 0.9: 67.4},
        "last": {0.2: 93.0, 0.5: 92.9, 0.8: 90.6, 0.9: 66.5},
    },
    (True, False): {
        "best": {0.2: 87.8, 0.5: 85.7, 0.8: 79.9, 0.9: 76.0},
        "last": {0.2: 87.2, 0.5: 85.5, 0.8: 79.4, 0.9: 75.4},
    },
    (True, True): {
        "best": {0.2: 94.7, 0.5: 94.2, 0.8: 93.5, 0.9: 92.8},
        "last": {0.2: 94.2, 0.5: 94.0, 0.8: 93.2, 0.9: 92.0},
    },
}

#: Table 7: Clothing1M top-1 by the size of the clean validation set, as a fraction of
#: the official one. The paper has no CIFAR version of this table.
TABLE7_CLOTHING1M: dict[float, float] = {0.1: 75.50, 0.2: 76.40, 0.3: 76.61, 0.4: 77.00, 0.5: 77.30,
                                        1.0: 77.31}

#: The CIFAR trusted (clean validation) set of the paper: 1,000 samples.
PAPER_TRUSTED_CIFAR = 1000

#: Table 1, CIFAR-10: DivideMix and DMLP-DivideMix (the upstream method, a ResNet trained by
#: DivideMix on the noisy or on DMLP's purified labels): name -> {"best"|"last": {rate: acc}}.
TABLE1_DIVIDEMIX_C10: dict[str, dict[str, dict[float, float]]] = {
    "DivideMix": {
        "best": {0.2: 96.1, 0.5: 94.6, 0.8: 93.2, 0.9: 76.0},
        "last": {0.2: 95.7, 0.5: 94.4, 0.8: 92.9, 0.9: 75.4},
    },
    "DMLP-DivideMix": {
        "best": {0.2: 96.3, 0.5: 95.8, 0.8: 94.5, 0.9: 94.3},
        "last": {0.2: 96.2, 0.5: 95.6, 0.8: 94.3, 0.9: 94.0},
    },
}

#: Table 4 (generality), CIFAR-10 columns: method -> {"best"|"last": {rate: acc}}.
#: Co-teaching uses the 9-layer CNN.
TABLE4_C10: dict[str, dict[str, dict[float, float]]] = {
    "Co-teaching": {"best": {0.2: 82.6, 0.5: 73.0, 0.8: 24.0, 0.9: 14.6},
                    "last": {0.2: 81.9, 0.5: 72.6, 0.8: 23.5, 0.9: 11.7}},
    "DMLP-Co-teaching": {"best": {0.2: 85.8, 0.5: 85.8, 0.8: 85.4, 0.9: 84.6},
                         "last": {0.2: 85.6, 0.5: 85.6, 0.8: 85.3, 0.9: 84.5}},
    "CDR": {"best": {0.2: 90.4, 0.5: 85.0, 0.8: 47.2, 0.9: 12.3},
            "last": {0.2: 82.7, 0.5: 49.4, 0.8: 16.6, 0.9: 10.1}},
    "DMLP-CDR": {"best": {0.2: 91.4, 0.5: 91.2, 0.8: 91.2, 0.9: 90.2},
                 "last": {0.2: 91.2, 0.5: 90.8, 0.8: 90.6, 0.9: 89.3}},
    "ELR+": {"best": {0.2: 94.6, 0.5: 93.8, 0.8: 91.1, 0.9: 75.2},
             "last": {0.2: 94.4, 0.5: 93.7, 0.8: 90.5, 0.9: 73.5}},
    "DMLP-ELR+": {"best": {0.2: 94.9, 0.5: 94.1, 0.8: 93.0, 0.9: 92.5},
                  "last": {0.2: 94.6, 0.5: 94.0, 0.8: 92.7, 0.9: 92.1}},
}

#: Table 8 (feature source of DMLP-Naive), CIFAR-10: source -> {"best"|"last": {rate: acc}}.
#: R18/R50: ResNet-18/50; M: MoCo, S: SimCLR.
TABLE8_C10: dict[str, dict[str, dict[float, float]]] = {
    "R18 (M)": {"best": {0.2: 93.8, 0.5: 93.3, 0.8: 92.2, 0.9: 90.4},
                "last": {0.2: 93.7, 0.5: 92.7, 0.8: 92.1, 0.9: 90.0}},
    "R18 (S)": {"best": {0.2: 94.0, 0.5: 93.7, 0.8: 93.1, 0.9: 92.3},
                "last": {0.2: 93.9, 0.5: 93.4, 0.8: 92.9, 0.9: 91.9}},
    "R50 (S)": {"best": {0.2: 94.7, 0.5: 94.2, 0.8: 93.5, 0.9: 92.8},
                "last": {0.2: 94.2, 0.5: 94.0, 0.8: 93.2, 0.9: 92.0}},
}
