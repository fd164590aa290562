# BitFit: only backbone parameters named *bias* train (this includes
# relative_position_bias_table).
method = dict(adapter=None, tuning='bitfit')
