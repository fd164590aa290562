"""What tools/*.py run: argument handling, checks of the command, the config
and the data made before the Runner is built, and building the Runner."""
