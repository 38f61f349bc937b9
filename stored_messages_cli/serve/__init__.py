"""`sm serve`: messages and send events in over HTTP (SPEC 9.3, docs/serve.md).

A layer beside `ops/`: `ingest` (what a posted body does to the spool, without HTTP), `app`
(the Starlette application and the `WebhookReceiver` protocol), `listen` (the sockets),
`server` (uvicorn), `metrics`. Starlette and uvicorn are imported only here, and only when
`sm serve` runs (the extra `[serve]`).
"""
