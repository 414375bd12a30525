"""Server side for Flower's Message API (``ServerApp`` with ``@app.main()``)."""
