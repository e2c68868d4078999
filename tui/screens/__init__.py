"""The app's screens: runs browser, run view, modals."""
