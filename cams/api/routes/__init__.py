"""The service's routes as one `APIRouter` per domain; `cams.api.app.create_app` includes them.
Auth, org scoping and the warehouse come in through `cams.api.deps`."""
