"""Datasets: torchvision's own classes, fed from a local mirror when there is one."""
