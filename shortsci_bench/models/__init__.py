"""Plain `nn.Module`s, one file per paper's model. Lightning wrappers live in `tasks/`."""
