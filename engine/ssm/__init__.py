"""State-space (Mamba) building blocks: the selective scan and the Mamba block."""
