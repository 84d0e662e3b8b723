"""YAML workflows: a loader, ``${{ }}`` interpolation, shell and Deno step executors."""
