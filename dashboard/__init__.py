"""The operations dashboard, a staff page inside the Django admin site."""
