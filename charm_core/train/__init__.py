"""Dual-path CHARM training: CoL over random modality subsets + InE on a SoftMin-sampled modality."""
