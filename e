/dev/fd/3: line 58: put: command not found
