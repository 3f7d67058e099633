import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Experiment(_message.Message):
    __slots__ = ("id", "is_draft", "created_at", "created_by_user", "created_by_user_id", "updated_at", "updated_by_user", "updated_by_user_id", "organization_id", "organization", "goal_id", "goal", "groups", "name", "starts_at", "ends_at", "group_reset_interval", "rooms", "room_ids", "etag")
    ID_FIELD_NUMBER: _ClassVar[int]
    IS_DRAFT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_USER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_USER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_USER_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    GOAL_ID_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    GROUP_RESET_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    ROOM_IDS_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    id: str
    is_draft: bool
    created_at: _timestamp_pb2.Timestamp
    created_by_user: User
    created_by_user_id: str
    updated_at: _timestamp_pb2.Timestamp
    updated_by_user: User
    updated_by_user_id: str
    organization_id: str
    organization: Organization
    goal_id: str
    goal: Goal
    groups: _containers.RepeatedCompositeFieldContainer[Group]
    name: str
    starts_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    group_reset_interval: str
    rooms: _containers.RepeatedCompositeFieldContainer[Room]
    room_ids: _containers.RepeatedScalarFieldContainer[str]
    etag: str
    def __init__(self, id: _Optional[str] = ..., is_draft: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by_user: _Optional[_Union[User, _Mapping]] = ..., created_by_user_id: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by_user: _Optional[_Union[User, _Mapping]] = ..., updated_by_user_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., organization: _Optional[_Union[Organization, _Mapping]] = ..., goal_id: _Optional[str] = ..., goal: _Optional[_Union[Goal, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[Group, _Mapping]]] = ..., name: _Optional[str] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_reset_interval: _Optional[str] = ..., rooms: _Optional[_Iterable[_Union[Room, _Mapping]]] = ..., room_ids: _Optional[_Iterable[str]] = ..., etag: _Optional[str] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("id", "created_at", "updated_at", "order", "name", "percentage", "group_type", "treatment")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    GROUP_TYPE_FIELD_NUMBER: _ClassVar[int]
    TREATMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    order: int
    name: str
    percentage: int
    group_type: _struct_pb2.Value
    treatment: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order: _Optional[int] = ..., name: _Optional[str] = ..., percentage: _Optional[int] = ..., group_type: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., treatment: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "first_name", "last_name", "full_name", "organization_id", "is_bot")
    ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    FULL_NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    IS_BOT_FIELD_NUMBER: _ClassVar[int]
    id: str
    first_name: str
    last_name: str
    full_name: str
    organization_id: str
    is_bot: bool
    def __init__(self, id: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., full_name: _Optional[str] = ..., organization_id: _Optional[str] = ..., is_bot: _Optional[bool] = ...) -> None: ...

class Organization(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Goal(_message.Message):
    __slots__ = ("id", "name", "organization", "organization_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    organization: Organization
    organization_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., organization: _Optional[_Union[Organization, _Mapping]] = ..., organization_id: _Optional[str] = ...) -> None: ...

class Room(_message.Message):
    __slots__ = ("id", "name", "organization_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    organization_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., organization_id: _Optional[str] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("organization_id", "page_size", "cursor")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    page_size: int
    cursor: str
    def __init__(self, organization_id: _Optional[str] = ..., page_size: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("next", "previous", "results", "next_cursor", "previous_cursor")
    NEXT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CURSOR_FIELD_NUMBER: _ClassVar[int]
    next: str
    previous: str
    results: _containers.RepeatedCompositeFieldContainer[Experiment]
    next_cursor: str
    previous_cursor: str
    def __init__(self, next: _Optional[str] = ..., previous: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ..., next_cursor: _Optional[str] = ..., previous_cursor: _Optional[str] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("organization_id", "experiment_id")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    experiment_id: str
    def __init__(self, organization_id: _Optional[str] = ..., experiment_id: _Optional[str] = ...) -> None: ...

class CreateExperimentRequest(_message.Message):
    __slots__ = ("organization_id", "experiment")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    experiment: Experiment
    def __init__(self, organization_id: _Optional[str] = ..., experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class UpdateExperimentRequest(_message.Message):
    __slots__ = ("organization_id", "experiment_id", "experiment")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    experiment_id: str
    experiment: Experiment
    def __init__(self, organization_id: _Optional[str] = ..., experiment_id: _Optional[str] = ..., experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class DeleteExperimentRequest(_message.Message):
    __slots__ = ("organization_id", "experiment_id")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    experiment_id: str
    def __init__(self, organization_id: _Optional[str] = ..., experiment_id: _Optional[str] = ...) -> None: ...
