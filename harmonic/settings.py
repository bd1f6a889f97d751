"""The two settings every experiment runs under (docs/deviations.md is the item-by-item table).

faithful   what the original code effectively ran to produce the published figure or table (read from the code,
           cited file and line in docs/deviations.md); bugs that make a result meaningless stay out, said so there.
corrected  what the papers state, or what a careful experiment needs (matched optimisers, no leakage, true distances).

A cell's setting is a path part (results/<family>/<setting>/<dataset>/<model>/<head>/seed<k>/), an `overrides`
key each family can match on, and a column of every results table, so the two can be compared side by side.
"""

SETTINGS = ("faithful", "corrected")


def check_settings(names, key):
    """The list of settings a config section asks for; an unknown name raises ValueError naming `key`."""
    unknown = [name for name in names if name not in SETTINGS]
    if unknown or not names:
        raise ValueError(f"{key}: unknown setting(s) {unknown or names}; allowed: {', '.join(SETTINGS)}")
    return list(names)
