"""`recover bench`: measured rates per backend on this machine, and a labelled Kaggle T4 projection."""
