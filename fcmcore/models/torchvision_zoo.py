"""Placeholder until the torchvision zoo module lands."""
