"""``isnet serve``: a segmentation model behind HTTP, with a web page to try it.

    pip install 'isnet[serve]'
    isnet serve --checkpoint model.safetensors --port 8000
    curl -F image=@photo.jpg http://127.0.0.1:8000/predict -o labels.png
    curl -F image=@photo.jpg 'http://127.0.0.1:8000/predict?format=json'

The stack is Starlette on uvicorn (with python-multipart for uploads). The service has
three routes and one upload field, so Starlette's routing, multipart parsing, thread pool
and lifespan hooks are all it needs; FastAPI would add pydantic for request models there
are none of, and its interactive ``/docs`` page loads Swagger UI from a CDN, which the
offline web page must not depend on. uvicorn is the reference ASGI server: it runs from a
Python call (one command starts everything) and on SIGTERM stops accepting connections,
lets requests in flight finish, then runs the app's shutdown (which drains the batch
queue). LitServe (built on FastAPI) batches by count and time, but grouping requests by
image size, which stacking images needs, would still be ours to write, under one more layer.

Modules: :mod:`~isnet.apps.serve.app` (the routes, ``create_app`` and ``run``),
:mod:`~isnet.apps.serve.batching` (concurrent requests of one image size share one model call),
:mod:`~isnet.apps.serve.uploads` (size and pixel limits, decoding as ``isnet predict`` does),
:mod:`~isnet.apps.serve.responses` (label PNG, overlay PNG or JSON) and ``page.html``.
"""
