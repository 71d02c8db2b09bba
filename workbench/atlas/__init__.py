"""The head atlas (issue 16): the newest saved run of every registered analysis for one model, joined into one
head × metric table with bootstrap intervals, rank stability, agreement between metrics, roles and a causal column.

    from workbench.atlas.build import build_atlas      # from saved runs, no model forward
    from workbench.atlas.store import load_atlas, export_atlas
    atlas.wide(), atlas.head("L17H4"), compare.compare_atlases(a, b)

Modules: table (the Atlas and its table columns), sources (which runs), bootstrap, agreement, roles, compare,
store, build. Torch-free: numpy, pandas and scipy only.
"""
