from __future__ import annotations

from django.urls import path

from mongars_web.views import account, auth, chat

urlpatterns = [
    path("", chat.conversation_list, name="home"),
    path("login/", auth.login, name="login"),
    path("register/", auth.register, name="register"),
    path("logout/", auth.logout, name="logout"),
    path("chat/new/", chat.new_chat, name="new_chat"),
    path("chat/<uuid:conversation_id>/", chat.conversation, name="conversation"),
    path("chat/<uuid:conversation_id>/export/", chat.export, name="export"),
    path("chat/<uuid:conversation_id>/delete/", chat.delete, name="delete_conversation"),
    path("search/", chat.search, name="search"),
    path("account/password/", account.change_password, name="change_password"),
    path("users/", account.users, name="users"),
    path("users/<str:username>/", account.user_action, name="user_action"),
    path("ws-ticket/", chat.ws_ticket, name="ws_ticket"),
]
