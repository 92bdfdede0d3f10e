"""chatroom's benchmark harness: chatroom against its peer servers, same run, same box.

``python -m bench --help``; the method is in bench/README.md.
"""
