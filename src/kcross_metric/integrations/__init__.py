"""K-CROSS inside training code: torchmetrics classes for validation loops (:mod:`.metrics`,
needs ``torchmetrics``) and losses for generators (:mod:`.losses`)."""
