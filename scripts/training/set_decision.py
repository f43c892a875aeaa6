"""Set decision for a multi-label task that maximises the expected Hamming score, estimated by cross-fitting.

Why: the Hamming score averages |Y and Z| / |Y or Z| over faces with a non-empty Y or Z, so the best answer for a
face depends on the joint probability of its label sets, not on each label alone, and answering "none" removes a
clean-shaven face from the denominator. This checks whether such a decision beats the plain 0.5 threshold on the
same scores; it is reported next to the per-label offsets (``calibration.calibrate``), not shipped.

Model: a multinomial logistic regression over all 2^L label sets on the task's L out-of-fold logits. Decision per
face: the set Z with the highest E[J(Y, Z)] - H, or the empty set, worth -H * P(Y non-empty); the weight H (the score
to beat, as in Dinkelbach's method for ratio objectives) is fitted by grid on the training folds.
"""
import itertools

import numpy as np
import torch

from scripts.training.metrics import hamming_score

DENOMINATOR_WEIGHTS = np.round(np.arange(0.30, 1.0001, 0.02), 2)
L2_PENALTY = 1e-2


def label_sets(n_labels):
    """All 2^L label sets as a (2^L, L) bool array; row 0 is the empty set."""
    return np.array(list(itertools.product([False, True], repeat=n_labels)), dtype=bool)


def jaccard_table(sets):
    """J[y, z] = |y and z| / |y or z| between every pair of sets (0 where both are empty)."""
    inter = (sets[:, None] & sets[None]).sum(-1)
    union = (sets[:, None] | sets[None]).sum(-1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def set_index(labels):
    """Row of ``label_sets`` for each (N, L) 0/1 label row."""
    labels = np.asarray(labels) > 0.5
    return (labels * (1 << np.arange(labels.shape[1])[::-1])).sum(axis=1)


def fit_set_model(logits, labels):
    """Weights (L + 1, 2^L) of the multinomial model P(set | logits), L2-penalised (bias free), by L-BFGS."""
    features = torch.tensor(np.c_[logits, np.ones(len(logits))], dtype=torch.float64)
    targets = torch.tensor(set_index(labels))
    weights = torch.zeros(features.shape[1], 2 ** logits.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights], max_iter=300)

    def loss():
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(features @ weights, targets) + L2_PENALTY * (weights[:-1] ** 2).sum()
        value.backward()
        return value

    optimiser.step(loss)
    return weights.detach().numpy()


def set_probabilities(weights, logits):
    scores = np.c_[logits, np.ones(len(logits))] @ weights
    scores -= scores.max(axis=1, keepdims=True)
    probabilities = np.exp(scores)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def decide(probabilities, denominator_weight):
    """(N, L) bool decisions: per face the set with the best expected score contribution (see module doc)."""
    sets = label_sets(int(np.log2(probabilities.shape[1])))
    gain = probabilities @ jaccard_table(sets) - denominator_weight
    gain[:, 0] = -denominator_weight * (1.0 - probabilities[:, 0])
    return sets[gain.argmax(axis=1)]


def fit_denominator_weight(probabilities, labels):
    scores = [hamming_score(labels, decide(probabilities, weight)) for weight in DENOMINATOR_WEIGHTS]
    return float(DENOMINATOR_WEIGHTS[int(np.argmax(scores))])


def cross_fitted_set_decision(logits, labels, folds, n_splits):
    """Hamming score of the set decision on each test fold, the set model and H fitted on the other folds'
    out-of-fold rows (``calibration.calibrate`` pairs it with the plain 0.5 threshold)."""
    logits, labels, folds = np.asarray(logits, np.float64), np.asarray(labels) > 0.5, np.asarray(folds)
    scores = []
    for fold in range(n_splits):
        test, train = folds == fold, folds != fold
        weights = fit_set_model(logits[train], labels[train])
        weight = fit_denominator_weight(set_probabilities(weights, logits[train]), labels[train])
        scores.append(hamming_score(labels[test], decide(set_probabilities(weights, logits[test]), weight)))
    return scores
