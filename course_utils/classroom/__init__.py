"""The course on JupyterHub (issue 18): a real classroom on one machine, for tests and small classes.

- ``hub``          :class:`~course_utils.classroom.hub.Classroom`: users, servers' environment, exchange,
                   PostgreSQL, JupyterHub with configurable-http-proxy; started and stopped by PID
- ``users``        real Linux users (one instructor, students), made and removed by the classroom
- ``environment``  the servers' Python: the course's packages, runnable by every user
- ``rest``         driving it through the servers' REST APIs (assignment list, formgrader, contents, kernels)
- ``postgres``     a private PostgreSQL cluster in a run folder (the hub's database and the course's gradebook)

``python -m course_utils.classroom start|stop|install`` (``make classroom`` / ``make classroom-stop``);
docs/instructor.md, "Teaching on JupyterHub".
"""
