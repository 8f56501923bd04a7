"""Training: where a model looks and how it learns, the same for every model.

``sampler`` places the windows (label windows = the classification tiles around the labelled pixels,
memory grids), ``crops`` the 32 px crops of crop models (M3amba), ``train`` is the one trainer loop
(the model declares its recipe), ``distributed`` runs it on several GPUs under torchrun, and ``sizing``
chooses a model width that fits the device. Classification looks where training looked: ``inference``
takes its tile plan (``sampler.plan_tiles``) and its crop grid (``crops``) from here.
"""
