"""The five named stages of a training repeat, one module each, in the order they run:

``data`` (:mod:`.data`) → ``architecture`` (:mod:`.architecture`) → ``training``
(:mod:`.training`) → ``system`` (:mod:`.system`) → ``inference`` (:mod:`.inference`, with v9's
``export`` window). Each module's ``run(rep, …)`` opens the stage's energy window on the
:class:`training.repeat.Repeat` it is given, writes its fields into ``rep.result`` and returns
what the next stage needs; :mod:`training.repeat` chains them.
"""
