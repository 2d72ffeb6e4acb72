"""Episode detection: one module per method, the detector protocol and the episode table.

``base`` (the :class:`~alliancetrack.detection.base.Detector` protocol, labels,
registry), ``detect`` (:func:`alliancetrack.detect_episodes`), ``episodes`` (the
common table), ``rules`` + ``rule_engine`` (dip-and-recovery rules),
``changepoint`` + ``segmentation`` + ``pelt`` (change points), ``sudden`` +
``sudden_summary`` (sudden changes), ``reported`` (PSQ self-report, 3RS
observer codes), ``strategies`` (3RS resolution strategies linked to the
episodes), ``engines`` (registry of out-of-core engines such as Dask).
"""
