"""The K-CROSS metric: :class:`KCross`, its result type, the branches, k-space helpers and the
networks (complex layers, complex U-Net, autoencoders, segmenter, score heads).

Imports point down only: ``metric -> branches -> nets -> kspace``; nothing here imports
``baselines``, ``evaluation``, ``train``, ``report`` or ``cli``.
"""
