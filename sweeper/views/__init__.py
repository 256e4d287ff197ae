"""One room per view: each module holds its info type, its ``*_info(snapshot)`` (pure: no
Plotly, no storage) and its ``*_figure(info)`` (draws only). ``panels`` orders them for the
report, the live page and the notebook; ``style`` is their shared look.
"""
