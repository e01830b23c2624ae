"""The UI's forms: labelled fields and the first checks; the API has the final word (its
refusals are put back on the form, on the field they name)."""

from __future__ import annotations

from django import forms

from mongars_web.api import ApiError, plain_words

# Field names the API uses → the form's own, for its 422 answers.
API_FIELDS = {"old_password": "current_password", "new_password": "new_password"}


def password_field(label: str, autocomplete: str) -> forms.CharField:
    """Passwords are taken exactly as typed (no stripping); the API checks their length."""
    return forms.CharField(
        label=label,
        strip=False,
        max_length=1024,
        widget=forms.PasswordInput(attrs={"autocomplete": autocomplete}),
    )


class ApiForm(forms.Form):
    def add_api_error(self, error: ApiError) -> None:
        """Show the API's refusal on the field it names, or above the form in plain words."""
        if not error.field_errors:
            self.add_error(None, plain_words(error))
            return
        placed = False
        for api_name, message in (error.field_errors or {}).items():
            name = API_FIELDS.get(api_name, api_name)
            if name in self.fields:
                self.add_error(name, message)
                placed = True
        if not placed:
            self.add_error(None, error.detail)


class LoginForm(ApiForm):
    username = forms.CharField(
        label="Username", max_length=64, widget=forms.TextInput(attrs={"autocomplete": "username"})
    )
    password = password_field("Password", "current-password")


class RegisterForm(ApiForm):
    username = forms.CharField(
        label="Username",
        max_length=64,
        help_text="Letters, digits, dots, dashes and underscores.",
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    password = password_field("Password", "new-password")
    password_again = password_field("Password, again", "new-password")

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords are not the same.")
        return data


class ChangePasswordForm(ApiForm):
    current_password = password_field("Current password", "current-password")
    new_password = password_field("New password", "new-password")
    new_password_again = password_field("New password, again", "new-password")

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("new_password") and data.get("new_password") != data.get("new_password_again"):
            self.add_error("new_password_again", "The two new passwords are not the same.")
        return data


class MessageForm(ApiForm):
    message = forms.CharField(
        label="Your message",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Ask monGARS something"}),
    )

    def clean_message(self) -> str:
        text: str = self.cleaned_data["message"]
        if not text.strip():
            raise forms.ValidationError("Write something first.")
        return text
