from django.shortcuts import render


def forbidden(request, exception=None):
    """403 page that says why (the PermissionDenied message)."""
    reason = str(exception) if exception and str(exception) else "You may not do this."
    return render(request, "poms/403.html", {"reason": reason}, status=403)
