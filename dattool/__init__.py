"""qss-dat: ``info``, ``csv`` and ``gen`` over ``.dat`` files, for operators
(:mod:`dattool.cli`). The format itself is :mod:`qss.dat`."""
