"""The agent portal: server-rendered pages, each a thin client of the JSON API.

Pages never query the database: every read and every form goes through the API's
own routes (in-process, over ASGI), so the portal shows exactly what the API says,
field errors included.
"""
