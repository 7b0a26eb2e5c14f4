"""Data for CHARM: the DELIVER-layout loader, training augmentation and the synthetic street world."""
