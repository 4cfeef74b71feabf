"""The rules of the product, framework-free: generation, plans and credits, usage, verification."""
